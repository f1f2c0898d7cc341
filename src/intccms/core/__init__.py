"""Data types shared by every layer (records of work done); they import nothing of intccms."""
