"""Evaluation: one evaluator over one predictions table for every model.

    evaluator = Evaluator(prepared, cfg.dataset, cfg.eval, seed)
    metrics = evaluator.evaluate(LLMPredictor(model, tokenizer, datamodule, protocol, layout, 20), out_dir=run_dir)
    metrics = evaluator.evaluate(SeqRecPredictor(sasrec), out_dir=run_dir)

It can be called on a model in the middle of training (say from a Lightning callback at the end of
an epoch): ``evaluator.evaluate(predictor, roles=["val"])`` writes nothing, returns the metrics, and
the predictors put the model back in the train/eval mode they found it in.
"""

from napo_lab.eval.evaluator import Evaluator, LLMPredictor, SeqRecPredictor

__all__ = ["Evaluator", "LLMPredictor", "SeqRecPredictor"]
