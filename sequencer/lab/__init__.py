"""The liquidation lab (``isoroll lab``): simulated traders and market makers
against the real rules, in process, under a chosen liquidation policy.

Pure simulation: the same seed gives the same records and the same numbers.
``venue`` runs the exchange (unsigned records, signature checks off, as an
executor replaying its own log); ``scenarios`` makes price paths;
``population`` the traders; ``run`` drives one policy and measures it;
``report`` prints the table and writes the plots; ``cli`` registers the command.
"""
