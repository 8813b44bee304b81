"""heartbeat-gateway: servers ping it, it texts you through a local GSM modem when one goes silent."""

__version__ = "0.1.0"
