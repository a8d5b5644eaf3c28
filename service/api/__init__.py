"""REST routes: Open Inference Protocol v2 (``v2``), domain predict (``predict``), repository management
(``admin``) and the status page with metrics (``status``). Shared helpers live in ``common``."""
