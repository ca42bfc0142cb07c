"""Networks, the classifier LightningModule and the datamodule; no Ray, no Prefect here."""
