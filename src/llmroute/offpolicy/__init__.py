"""Off-policy evaluation of routers on the production decision log.

* :mod:`.estimators`: IPS, self-normalised IPS, direct method and doubly robust, with bootstrap intervals.
* :mod:`.logged`: the usable logged decisions and the logging policy's distribution.
* :mod:`.policies`: what a router would have chosen for each logged request.
* :mod:`.reward`: cross-fitted reward models (quality, cost) for DM and DR.
* :mod:`.evaluate`: challenger vs champion on the log (:func:`evaluate_offpolicy`).
* :mod:`.gate`: the off-policy promotion rule (:func:`offpolicy_verdict`).
"""

# the off-policy gate's defaults, here so that the CLI and the registry can name them without
# importing the estimators
MIN_MATCHES = 30  # logged calls that must back the routers' disagreements
DEFAULT_TOLERANCE = 0.02  # quality loss the lower end of the DR difference's interval may show
