"""One router per resource; `ROUTERS` is the order they are mounted in."""

from fastapi import APIRouter

from server.generation import signing, webhooks
from server.realtime import gateway, metrics
from server.routers import (
    alerts,
    auth,
    chat,
    conversations,
    events,
    generations,
    health,
    home,
    memories,
    photos,
    updates,
    users,
    web,
)

ROUTERS: list[APIRouter] = [
    health.router,
    auth.router,
    users.router,
    home.router,
    photos.router,
    events.router,
    memories.router,
    conversations.router,
    alerts.router,
    generations.router,
    chat.router,
    updates.router,
    webhooks.router,
    signing.router,
    gateway.router,
    metrics.router,
    web.router,
]
