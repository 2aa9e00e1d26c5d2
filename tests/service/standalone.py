"""Serve the experiments app with the stand-in Hub auth in its own process (crash tests).

python -m tests.service.standalone DB_URL PORT BLOB_DIR
"""

from __future__ import annotations

import asyncio
import logging
import sys

from tornado.httpserver import HTTPServer

from hub_ext.experiments.app import make_app
from hub_ext.experiments.blobs import BlobStore
from hub_ext.experiments.store import open_store
from tests.service.fakehub import PREFIX, FakeHubAuth


def main() -> None:
    db_url, port, blob_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    async def serve() -> None:
        app = make_app(
            store=open_store(db_url),
            prefix=PREFIX,
            hub_auth=FakeHubAuth(),
            group_lookup=lambda name: [],
            log=logging.getLogger("standalone"),
            blobs=BlobStore(blob_dir),
        )
        HTTPServer(app).listen(port, "127.0.0.1")
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
