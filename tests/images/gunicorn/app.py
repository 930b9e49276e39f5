"""A Flask app served by gunicorn from Debian's packages: bgd's tests run a real Python
application server at its defaults (gunicorn binds 127.0.0.1:8000 unless told otherwise;
its gthread worker keeps idle connections 2 s).

  GET  /        "gunicorn-app version=<APP_VERSION> host=<hostname>", header X-App-Version
  GET  /health  200 ok
  POST /echo    the number of bytes received
"""
import os
import socket

from flask import Flask, request

app = Flask(__name__)
VERSION = os.environ.get("APP_VERSION", "g1")
HOST = socket.gethostname()


@app.after_request
def version_header(response):
    response.headers["X-App-Version"] = VERSION
    return response


@app.get("/")
def home():
    return f"gunicorn-app version={VERSION} host={HOST}\n"


@app.get("/health")
def health():
    return "ok\n"


@app.post("/echo")
def echo():
    return f"received {len(request.get_data())} bytes\n"
