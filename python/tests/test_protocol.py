"""The engine answers exactly the protocol's requests, and every fault carries its kind's code
(python/model_lens_engine/protocol.py is generated from src/protocol/)."""

import unittest

from model_lens_engine import protocol
from model_lens_engine.errors import EngineFault, bad_request, not_found, user_fault
from model_lens_engine.server import Server


class _NoConnection:
    def notify(self, method, params):
        raise AssertionError("nothing is sent while building a server")


class ProtocolTest(unittest.TestCase):
    def test_handlers_are_the_protocol_requests(self):
        server = Server(_NoConnection())
        self.assertEqual(sorted(server.handlers), sorted(protocol.REQUESTS))

    def test_a_fault_is_sent_with_its_kinds_code(self):
        self.assertEqual(bad_request("x").code, protocol.BAD_REQUEST)
        self.assertEqual(not_found("unknownPath", "x").code, protocol.NOT_FOUND)
        self.assertEqual(user_fault("shapeMismatch", "x").code, protocol.USER_ERROR)
        # The kind wins over a code passed by hand.
        self.assertEqual(
            EngineFault(protocol.ENVIRONMENT, "badRequest", "x").code, protocol.BAD_REQUEST
        )
        for kind, code in protocol.ERROR_CODE_OF_KIND.items():
            self.assertEqual(EngineFault(0, kind, "x").code, code, kind)


if __name__ == "__main__":
    unittest.main()
