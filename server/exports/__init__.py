"""Exports: the daily spend CSV of each workspace, written to S3 and downloaded through presigned URLs."""
