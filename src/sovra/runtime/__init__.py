"""Wiring for the commands that run the platform: config → parts → a running `sovra up`.

`engines.py`: the weight store, the engine binary, the service plans. `auth.py`: who may call.
`settings.py`: each part's settings, taken whole from the config. `serve.py`: the gateway in front of
the supervised engines, signals and a clean stop. Only the command line imports this package.
"""
