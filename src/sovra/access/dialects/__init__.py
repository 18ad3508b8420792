"""The shapes requests and answers come in: one client dialect per API a client speaks, one upstream
dialect per API an upstream speaks, composed once per request (`compose.py`). OpenAI's chat and
completions shapes are the language in between: accounting reads them."""
