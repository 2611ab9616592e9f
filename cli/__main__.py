from anomalousnet_cli.main import main

main(prog_name="anomalousnet-batch")
