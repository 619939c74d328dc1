"""Pages and JSON APIs of a lab store (issue 18): runs, a run's table and plots, samples."""

from fastapi import APIRouter

router = APIRouter()
