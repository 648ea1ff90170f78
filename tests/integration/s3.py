"""A local S3 server (moto) for a broker whose data must outlive its process (Tansu on ``s3://``)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from dataclasses import dataclass

import aiohttp

from bridge.local.broker import free_port, stop_process


@dataclass
class S3Server:
    process: subprocess.Popen[bytes]
    port: int
    bucket: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a client (the Tansu broker) needs in its environment to use this server."""
        return {
            "AWS_ENDPOINT": self.url,
            "AWS_ALLOW_HTTP": "true",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
        }

    async def stop(self) -> None:
        await stop_process(self.process)


async def start_s3(timeout_s: float = 30.0) -> S3Server:
    """``python -m moto.server`` on a free loopback port, with one empty bucket."""
    port = free_port()
    process = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once; we never wait on it here
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    server = S3Server(process, port, f"tansu-{uuid.uuid4().hex[:8]}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the S3 server (moto) exited with code {process.returncode}")
            try:
                async with session.put(f"{server.url}/{server.bucket}") as resp:
                    if resp.status == 200:
                        return server
                    raise RuntimeError(f"creating the bucket answered {resp.status}: {await resp.text()}")
            except aiohttp.ClientConnectionError:
                if loop.time() > deadline:
                    await server.stop()
                    why = f"the S3 server (moto) did not listen within {timeout_s:.0f}s"
                    raise RuntimeError(why) from None
                await asyncio.sleep(0.1)
