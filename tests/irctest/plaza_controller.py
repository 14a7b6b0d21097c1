"""irctest's controller for Plaza's IRC front end (docs/IRC.md).

irctest picks the address; this starts `plaza-server` on it with a fresh
data directory and guests allowed (irctest's clients have no accounts), and
irctest stops it. `PLAZA_SERVER` names the binary (scripts/irctest.sh sets it).
Modelled on irctest's controllers/ngircd.py.
"""

import ctypes
import os
import signal
from typing import Optional, Set, Type

from irctest.basecontrollers import BaseServerController, DirectoryBasedController
from irctest.runner import NotImplementedByController


def _own_session_dying_with_parent() -> None:
    """Runs in the child before exec: its own process group (as irctest
    gives it), and SIGTERM when the pytest process that started it ends. A
    test skipped in its setUp after the server started is never torn down;
    without this its server would outlive the run."""
    os.setsid()
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class PlazaController(BaseServerController, DirectoryBasedController):
    software_name = "Plaza"
    # SASL needs accounts, which irctest creates through services; the
    # runs here have none (scripts/irctest.sh excludes `services`).
    supported_sasl_mechanisms: Set[str] = set()
    supports_sts = False

    def run(
        self,
        hostname: str,
        port: int,
        *,
        password: Optional[str],
        ssl: bool,
        run_services: bool,
        faketime: Optional[str],
        websocket_hostname: Optional[str],
        websocket_port: Optional[int],
    ) -> None:
        if websocket_hostname is not None or websocket_port is not None:
            # Plaza's WebSocket front end carries its binary protocol, not IRC.
            raise NotImplementedByController("Websocket")
        if password is not None:
            # PASS is an account's password in Plaza: there is no server one.
            raise NotImplementedByController("server password")
        if run_services:
            raise NotImplementedByController("services")
        assert self.proc is None
        self.port = port
        self.hostname = hostname
        self.create_config()
        assert self.directory
        binary = os.environ.get("PLAZA_SERVER", "plaza-server")
        # irctest opers up with `OPER operuser operpassword`: Plaza's OPER
        # takes the ADMIN secret as its password.
        with self.open_file("admin.secret") as fd:
            fd.write("operpassword\n")
        args = [
            binary,
            "--data-dir", str(self.directory / "data"),
            "--bind", "127.0.0.1:0",
            "--control-bind", "127.0.0.1:0",
            "--metrics-bind", "off",
            "--allow-guests",
            "--irc-server-name", "My.Little.Server",
            "--admin-secret-file", str(self.directory / "admin.secret"),
            # irctest connects hundreds of clients from one address.
            "--login-rate-per-ip", "0",
            "--login-rate-per-account", "0",
            "--enter-leave-delay-ms", "0",
        ]
        if ssl:
            self.gen_ssl()
            (plain_host, plain_port) = self.get_hostname_and_port()
            args += [
                "--irc-bind", f"{plain_host}:{plain_port}",
                "--irc-tls-bind", f"{hostname}:{port}",
                "--tls-cert", str(self.pem_path),
                "--tls-key", str(self.key_path),
            ]
        else:
            args += ["--irc-bind", f"{hostname}:{port}"]
        self.proc = self.execute(args, preexec_fn=_own_session_dying_with_parent)


def get_irctest_controller_class() -> Type[PlazaController]:
    return PlazaController
