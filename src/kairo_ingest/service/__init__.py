"""The composition root for the long-running service: ``run`` (:mod:`.runner`), ``demo``
(:mod:`.demo`), the health server (:mod:`.health_server`, :mod:`.http`), the console
served on its own (:mod:`.operator_console`), and the job kinds it runs (:mod:`.handlers`).
See docs/operations.md.
"""
