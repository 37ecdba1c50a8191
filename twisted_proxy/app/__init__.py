"""
The application: the twistd plugin's options and service, and worker
processes.
"""
