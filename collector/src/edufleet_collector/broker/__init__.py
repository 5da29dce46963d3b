"""The broker side of device identity: the dynamic security client and our roles."""
