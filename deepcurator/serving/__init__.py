"""Scoring with a trained model: the scorer, the Flask app, the WSGI entry point and gunicorn's settings."""
