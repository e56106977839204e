"""What the tests share (pytest loads this beside every test module, also under
`--import-mode=importlib`, where test modules cannot import each other)."""

import pytest


def _pump(server, sessions, now, rng):
    """Runs every pending request of `sessions` through the server model, delivering responses and
    pushes, until no session has a request left."""
    by_id = {s.user_id: s for s in sessions}
    busy = True
    while busy:
        busy = False
        for user_id, s in by_id.items():
            while (request := s.poll_request()) is not None:
                busy = True
                updates, error, pushes = server.handle(user_id, request)
                s.handle_response(request.id, now, rng, updates=updates, error=error)
                for to, update in pushes:
                    by_id[to].handle_update(update, now, rng)


@pytest.fixture
def pump():
    """The server-model pump: `pump(server, sessions, now, rng)`."""
    return _pump
