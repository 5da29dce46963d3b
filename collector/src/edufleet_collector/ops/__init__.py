"""Operations: backups and restores of the database and the broker's identities."""
