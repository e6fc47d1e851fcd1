"""Loopback peers shared by the tests and the benchmarks: not part of the package.

A recording tracker and a raw socket server (:mod:`.tracker`), a server that misbehaves on
purpose (:mod:`.fault_server`), the tracker fault matrix (:mod:`.faults`), the fault apps
under gunicorn (:mod:`.gunicorn_server`, :mod:`.gunicorn_app`), and Keitaro-shaped clicks
filling a visitor's state cookie (:mod:`.clicks`).
"""
