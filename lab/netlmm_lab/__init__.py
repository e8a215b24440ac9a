"""The netlmm lab: a whole domain in network namespaces, the tools that measure it, and what is
built on them (the demo, the fuzz, soak, faults, load and throughput campaigns).

The test-bed library the tests and benchmarks share:

* :mod:`netlmm_lab.netns`: the namespace helper (create/delete, run or enter with setns);
* :mod:`netlmm_lab.poll`: :func:`~netlmm_lab.poll.wait_until`, the one poll-until-deadline;
* :mod:`netlmm_lab.topology`: :class:`~netlmm_lab.topology.Lab`, the one test bed (the
  NETLMM domain by default: CN, DLMAP, the IPv6 transport, two DMPAs with their base-station
  bridges, the MS; other shapes subclass it);
* :mod:`netlmm_lab.tools`: traffic across it (UDP probe stream, TCP transfer and session,
  ping, a frame counter), run in the namespaces by :mod:`netlmm_lab.children.traffic`;
* :mod:`netlmm_lab.domain`: the appliance (``netlmm run``) in each role of a lab.

Nothing outside the namespaces a lab made is touched.
"""
