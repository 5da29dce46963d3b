"""The asset registry: schools, rooms, devices, their QR codes and ledger import."""
