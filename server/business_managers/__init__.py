"""Business managers: the Meta business portfolios the platform works in."""
