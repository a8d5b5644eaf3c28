"""robeserve export: training checkpoints -> ONNX models with ai.robe custom ops -> the model repository.

``python -m export RUN_DIR --repository models --name NAME`` exports and verifies one run
(``export.exporter.export_run``); ``python -m export.verify MODEL_DIR`` re-verifies a published version
(``export.verify.verify_model_dir``); ``python -m export.demo`` trains and exports the demo models;
``python -m export.portability`` shows the fallback-function / kernel evidence. See docs/export.md.

Submodules are imported on demand: ``export.verify`` needs onnxruntime but not torch.
"""
