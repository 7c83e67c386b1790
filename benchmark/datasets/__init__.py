"""Datasets the harness can split into members, non-members and calibration images."""
