"""The lab: experiments that store every sample, replay every budget, fit and report."""
