"""Off-policy evaluation of routers on the production decision log.

* :mod:`.estimators`: IPS, self-normalised IPS, direct method and doubly robust, with bootstrap intervals.
* :mod:`.logged`: the usable logged decisions and the logging policy's distribution.
* :mod:`.policies`: what a router would have chosen for each logged request.
* :mod:`.reward`: cross-fitted reward models (quality, cost) for DM and DR.
* :mod:`.evaluate`: challenger vs champion on the log (:func:`evaluate_offpolicy`).
* :mod:`.gate`: the off-policy promotion rule (:func:`offpolicy_verdict`).
"""
