"""Database access: the connection pool, migrations and partition upkeep."""

from psycopg import Connection
from psycopg.rows import TupleRow

Conn = Connection[TupleRow]
"""A connection whose rows are plain tuples; the type every service function takes."""
