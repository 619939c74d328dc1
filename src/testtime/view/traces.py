"""Pages and JSON APIs for one search's trace (issue 18): trees, genealogies, tallies, brackets."""

from fastapi import APIRouter

router = APIRouter()
