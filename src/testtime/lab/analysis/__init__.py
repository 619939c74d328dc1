"""Generate once, replay many: stored pools replayed into curves of accuracy against cost,
with their estimators, fits and cost axes, and one budget replayed across problems."""
