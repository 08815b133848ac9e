"""A core NATS broadcast published right after a subscription returns reaches that subscriber: many
fresh subscribers in a row, each sent exactly one message, none missed (the race this guards against
lost about 1 in 150 before `Bus._server_has_it`)."""

from __future__ import annotations

import asyncio

from engine.bus.jetstream import Bus


def test_every_fresh_subscriber_gets_the_one_broadcast_published_after_it_subscribed(
        nats_url: str, nats_prefix: str) -> None:
    async def scenario() -> int:
        publisher = await Bus.connect(nats_url, prefix=nats_prefix)
        missed = 0
        try:
            for n in range(150):
                subscriber = await Bus.connect(nats_url, prefix=nats_prefix)
                got = asyncio.Event()

                async def on_cancel(data: bytes, got: asyncio.Event = got) -> None:
                    got.set()

                await subscriber.subscribe_cancel(on_cancel)
                await publisher.publish_cancel(b'{"command_id": "c%d"}' % n)
                try:
                    await asyncio.wait_for(got.wait(), timeout=5)
                except TimeoutError:
                    missed += 1
                await subscriber.close()
        finally:
            await publisher.close()
        return missed

    assert asyncio.run(scenario()) == 0
