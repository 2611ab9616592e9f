"""Click front end of the AnomalousNet batch suite (installed as ``anomalousnet_cli``)."""
