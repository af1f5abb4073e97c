"""Keras's `Progbar`: the progress line of fit, evaluate and predict.

On a terminal the line is redrawn in place with a carriage return:

    12/60 [=====>........................] - ETA: 3s - loss: 0.4721 - accuracy: 0.8512

and finished as `60/60 [==============================] - 4s 61ms/step - loss: ...`.
When stdout is not a terminal (a log file, a pipe, pytest's capture) nor a notebook,
nothing but the finished line is printed, so logs hold no control characters.
"""
import math
import sys
import time

import numpy as np


class Progbar:
    """Displays a progress bar.

    Args:
        target: total number of steps expected, None if unknown.
        width: width of the bar in characters.
        verbose: 0 silent, 1 the bar, 2 one line when finished.
        interval: minimum seconds between two redraws on a terminal.
        stateful_metrics: names of metrics shown as given; every other metric is
            averaged over the steps seen, weighted by step count (as Keras does).
        unit_name: what a step is called in the "ms/step" figure.

    Raises:
        ValueError: for a negative `target`, a non-positive `width` or an unknown `verbose`.
    """

    def __init__(self, target, width=30, verbose=1, interval=0.05, stateful_metrics=None,
                 unit_name="step"):
        if target is not None and target < 0:
            raise ValueError(f"target must be None or non-negative. Received: target={target}")
        if width < 1:
            raise ValueError(f"width must be a positive integer. Received: width={width}")
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2. Received: verbose={verbose}")
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.unit_name = unit_name
        self.stateful_metrics = set(stateful_metrics or ())
        self._values = {}
        self._values_order = []
        self._seen_so_far = 0
        self._start = time.time()
        self._last_update = 0.0
        self._time_after_first_step = None
        self._prev_total_width = 0

    @property
    def _dynamic_display(self):
        # A notebook's output is not a terminal but does honour carriage returns.
        return (hasattr(sys.stdout, "isatty") and sys.stdout.isatty()) or "ipykernel" in sys.modules

    def update(self, current, values=None, finalize=None):
        """Records progress and redraws.

        Args:
            current: index of the current step (1-based count of steps done).
            values: list of `(name, value)` pairs for the last step.
            finalize: whether this is the last update; defaults to `current >= target`.
        """
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        self._record(current, values or [], finalize)
        self._seen_so_far = current
        now = time.time()
        time_per_unit = self._estimate_step_duration(current, now)
        if self.verbose == 1:
            self._draw_bar(current, now, time_per_unit, finalize)
        elif self.verbose == 2 and finalize:
            self._draw_summary(current, now, time_per_unit)
        self._last_update = now

    def add(self, n, values=None):
        """Advances by `n` steps."""
        self.update(self._seen_so_far + n, values)

    def _record(self, current, values, finalize):
        for name, value in values:
            if name not in self._values_order:
                self._values_order.append(name)
            if name in self.stateful_metrics or finalize:
                self._values[name] = [value, 1]
                continue
            # Weight by the number of steps since the last update.
            steps = max(current - self._seen_so_far, 1)
            total, count = self._values.get(name, [0.0, 0])
            self._values[name] = [total + value * steps, count + steps]

    def _metrics_text(self):
        text = ""
        for name in self._values_order:
            total, count = self._values[name]
            average = float(np.mean(total)) / max(1, count)
            text += f" - {name}: {average:.4f}" if abs(average) > 1e-3 else f" - {name}: {average:.4e}"
        return text

    def _draw_bar(self, current, now, time_per_unit, finalize):
        dynamic = self._dynamic_display
        if not dynamic and not finalize:
            return
        if dynamic and not finalize and now - self._last_update < self.interval:
            return
        if self.target:
            digits = int(math.log10(self.target)) + 1
            bar = f"{current:{digits}d}/{self.target} ["
            filled = int(self.width * min(current / self.target, 1.0))
            if filled > 0:
                bar += "=" * (filled - 1) + (">" if current < self.target else "=")
            bar += "." * (self.width - filled) + "]"
        else:
            bar = f"{current:7d}/Unknown"
        if self.target and not finalize:
            info = f" - ETA: {_format_eta(time_per_unit * (self.target - current))}"
        else:
            info = f" - {now - self._start:.0f}s{_format_time(time_per_unit, self.unit_name)}"
        info += self._metrics_text()
        line = bar + info
        if dynamic:
            padding = " " * max(self._prev_total_width - len(line), 0)
            self._prev_total_width = len(line)
            line = "\r" + line + padding
        sys.stdout.write(line + ("\n" if finalize else ""))
        sys.stdout.flush()

    def _draw_summary(self, current, now, time_per_unit):
        if self.target:
            digits = int(math.log10(self.target)) + 1
            count = f"{current:{digits}d}/{self.target}"
        else:
            count = f"{current}"
        line = f"{count} - {now - self._start:.0f}s -{_format_time(time_per_unit, self.unit_name)}"
        sys.stdout.write(line + self._metrics_text() + "\n")
        sys.stdout.flush()

    def _estimate_step_duration(self, current, now):
        """Seconds per step, ignoring the (usually slow) first step once there are more."""
        if not current:
            return 0.0
        if self._time_after_first_step is not None and current > 1:
            per_step = (now - self._time_after_first_step) / (current - 1)
        else:
            per_step = (now - self._start) / current
        if current == 1:
            self._time_after_first_step = now
        return per_step


def _format_eta(seconds):
    if seconds > 3600:
        return "%d:%02d:%02d" % (seconds // 3600, (seconds % 3600) // 60, seconds % 60)
    if seconds > 60:
        return "%d:%02d" % (seconds // 60, seconds % 60)
    return "%ds" % seconds


def _format_time(time_per_unit, unit_name):
    if time_per_unit >= 1 or time_per_unit == 0:
        return f" {time_per_unit:.0f}s/{unit_name}"
    if time_per_unit >= 1e-3:
        return f" {time_per_unit * 1e3:.0f}ms/{unit_name}"
    return f" {time_per_unit * 1e6:.0f}us/{unit_name}"
