"""robeserve inference service: FastAPI + onnxruntime with dynamic batching.

Run it with ``python -m service --repository models``; build it in code with ``service.app.create_app``.
The service imports ``kernels`` (to register the custom-op library) but never ``training`` or torch.
"""
