"""Training progress: tqdm bar, periodic report lines, ``EXP/log/train.csv``, optional tensorboard.

``train.csv`` (comma separated, header)::

    epoch,iter,train_loss,valid_loss,train_acc,valid_acc,lr,elapsed_s

one row per report (every ``report_interval`` iterations and at the end of each epoch); ``epoch`` is
1-based, ``iter`` counts iterations within the epoch; losses and accuracies are averages since the
previous report (training) or over the whole validation set (empty when there is none); ``elapsed_s``
is the training wall time in seconds since epoch 1 began, summed over resumed runs. The file is
rewritten atomically on each report; on resume from epoch N the rows of later epochs are dropped.
Only rank 0 reports (the others create a disabled Reporter). Tensorboard scalars go to ``EXP/log/tb``
when ``torch.utils.tensorboard`` can be imported.
"""
import csv
import logging
import os
import time

from tqdm import tqdm

from subtools.kaldi.fileio import atomic_write

logger = logging.getLogger(__name__)

COLUMNS = ["epoch", "iter", "train_loss", "valid_loss", "train_acc", "valid_acc", "lr", "elapsed_s"]


class Reporter:
    def __init__(self, exp_dir, num_epochs, iters_per_epoch, start_epoch=0, enabled=True, progress_bar=True):
        self.enabled = enabled
        self.num_epochs, self.iters_per_epoch = num_epochs, iters_per_epoch
        self.progress_bar = progress_bar
        self.bar = None
        self.rows = []
        self.writer = None
        if not enabled:
            return
        self.csv_path = os.path.join(exp_dir, "log", "train.csv")
        if os.path.exists(self.csv_path):
            with open(self.csv_path) as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= start_epoch]
        self.elapsed_before = float(self.rows[-1].get("elapsed_s") or 0.0) if self.rows else 0.0
        self.started = time.monotonic()
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(os.path.join(exp_dir, "log", "tb"))
        except ImportError:
            self.writer = None

    def begin_epoch(self, epoch):
        """Open the bar of 0-based ``epoch``."""
        if self.enabled and self.progress_bar:
            self.bar = tqdm(total=self.iters_per_epoch, desc=f"epoch {epoch + 1}/{self.num_epochs}",
                            unit="it", dynamic_ncols=True, leave=False)

    def update(self, loss, acc, lr):
        """Advance the bar by one iteration, showing the batch's loss, accuracy and lr."""
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", acc=f"{acc:.3f}", lr=f"{lr:.3g}", refresh=False)
            self.bar.update(1)

    def report(self, epoch, iteration, train_loss, train_acc, valid_loss, valid_acc, lr):
        """Record one report row (``epoch`` 0-based here, stored 1-based)."""
        if not self.enabled:
            return
        row = {"epoch": epoch + 1, "iter": iteration, "train_loss": f"{train_loss:.6f}",
               "valid_loss": "" if valid_loss is None else f"{valid_loss:.6f}",
               "train_acc": f"{train_acc:.6f}", "valid_acc": "" if valid_acc is None else f"{valid_acc:.6f}",
               "lr": f"{lr:.6g}", "elapsed_s": f"{self.elapsed_before + time.monotonic() - self.started:.3f}"}
        self.rows.append(row)
        with atomic_write(self.csv_path) as f:
            out = csv.DictWriter(f, fieldnames=COLUMNS)
            out.writeheader()
            out.writerows(self.rows)
        line = (f"epoch {epoch + 1}/{self.num_epochs} iter {iteration}/{self.iters_per_epoch} "
                + " ".join(f"{k} {row[k] or '-'}" for k in COLUMNS[2:-1]))
        if self.bar is not None:
            self.bar.write(line)
        else:
            logger.info(line)
        if self.writer is not None:
            step = epoch * self.iters_per_epoch + iteration
            for key in ("train_loss", "valid_loss", "train_acc", "valid_acc", "lr"):
                if row[key] != "":
                    self.writer.add_scalar(key, float(row[key]), step)

    def end_epoch(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self):
        self.end_epoch()
        if self.writer is not None:
            self.writer.close()
