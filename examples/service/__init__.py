"""A reference backend on trunkkey: retailer, carmaker and cloud verify endpoints (FastAPI).

Run it with ``uvicorn --factory service.app:app_from_env --app-dir examples``;
see ``docs/service.md``.
"""
