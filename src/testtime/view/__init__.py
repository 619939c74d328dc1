"""`testtime view`: a local web app that shows lab stores, search traces and live runs.

It sits between the server (which links its pages for in-flight requests) and the lab
(whose store and analysis it reads); every asset it serves ships in the package.
"""
