"""City-systems simulator: deterministic synthetic city data served over real open-data APIs.

``calls`` generates 911 calls for service for a Dayton-like city, ``soql`` evaluates the SoQL
subset Socrata clients send, and ``server`` serves both over the SODA 2.1 wire protocol.
"""
