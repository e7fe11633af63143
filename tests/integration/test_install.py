"""make install (issue 5): `make install DESTDIR=... PREFIX=/usr` puts the
programs, man pages, migrations and the s6 and runit service directories
under DESTDIR/usr, nothing outside it, with the modes the supervisors need."""

import os
import stat
import subprocess
import unittest

from harness import REPO, scaled, tmpdir

STAGES = ("ingest-httpd", "inbox-writer", "inbox-worker", "outbox-relay", "router")


class InstallTest(unittest.TestCase):

    def test_install_tree(self):
        dest = os.path.join(tmpdir("install"), "root")
        env = dict(os.environ)
        # a sub-make of `make check` must not pass its own variables
        # (e.g. SANITIZER) on to this one
        for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
            env.pop(k, None)
        p = subprocess.run(["make", "--no-print-directory", "-s", "install",
                            "DESTDIR=" + dest, "PREFIX=/usr"], cwd=REPO, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=scaled(300))
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertEqual(os.listdir(dest), ["usr"])
        usr = os.path.join(dest, "usr")

        def mode(rel):
            st = os.stat(os.path.join(usr, rel))
            return stat.S_IMODE(st.st_mode)

        for s in STAGES:
            self.assertEqual(mode("bin/" + s), 0o755, s)
            self.assertTrue(os.path.isfile(os.path.join(usr, "share/man/man1", s + ".1")), s)
            s6 = "share/infonchat/s6/" + s
            for f in ("run", "finish", "log/run"):
                self.assertEqual(mode(s6 + "/" + f), 0o755, s6 + "/" + f)
            with open(os.path.join(usr, s6, "notification-fd")) as f:
                self.assertEqual(f.read().strip(), "3")
            rn = "share/infonchat/runit/" + s
            for f in ("run", "check", "log/run"):
                self.assertEqual(mode(rn + "/" + f), 0o755, rn + "/" + f)
            # the installed files are the sources, byte for byte
            for sup, f in (("s6", "run"), ("runit", "run"), ("runit", "check")):
                with open(os.path.join(REPO, "scripts", sup, s, f), "rb") as a, \
                        open(os.path.join(usr, "share/infonchat", sup, s, f), "rb") as b:
                    self.assertEqual(a.read(), b.read(), (sup, s, f))
        for f in ("bin/infonchat-migrate", "share/man/man7/infonchat-envelope.7",
                  "share/infonchat/sql/001_schema.sql", "share/infonchat/s6/README",
                  "share/infonchat/runit/README"):
            self.assertTrue(os.path.isfile(os.path.join(usr, f)), f)
        # no path of the build tree leaks into what was installed
        for root, _, files in os.walk(os.path.join(usr, "share/infonchat")):
            for f in files:
                with open(os.path.join(root, f), "rb") as fh:
                    self.assertNotIn(REPO.encode(), fh.read(), os.path.join(root, f))


if __name__ == "__main__":
    unittest.main()
