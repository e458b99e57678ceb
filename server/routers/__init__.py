"""One router per resource; `ROUTERS` is the order they are mounted in."""

from fastapi import APIRouter

from server.routers import auth, conversations, events, health, home, memories, photos, users

ROUTERS: list[APIRouter] = [
    health.router,
    auth.router,
    users.router,
    home.router,
    photos.router,
    events.router,
    memories.router,
    conversations.router,
]
