"""Readers and writers behind the dataset-prep stage (`flows/prepare_data.py`)."""
