"""Pages and streams of a run in progress (issue 18: live view); routes come later."""

from fastapi import APIRouter

router = APIRouter()
