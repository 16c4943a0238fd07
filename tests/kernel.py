"""A real IPython kernel for tests: run code, collect what it printed, displayed and raised."""

from __future__ import annotations

from dataclasses import dataclass, field

from jupyter_client.manager import start_new_kernel


@dataclass
class Result:
    stdout: str = ""
    stderr: str = ""
    displays: list = field(default_factory=list)   # data dicts of display_data messages
    error: tuple | None = None                     # (ename, evalue)
    value: str | None = None                       # text/plain of execute_result


class Kernel:
    def __init__(self):
        self.manager, self.client = start_new_kernel(kernel_name="python3")

    def run(self, code: str, timeout: float = 120) -> Result:
        result = Result()

        def collect(msg):
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and content["name"] == "stdout":
                result.stdout += content["text"]
            elif kind == "display_data":
                result.displays.append(content["data"])
            elif kind == "execute_result":
                result.value = content["data"].get("text/plain")
            elif kind == "stream":
                result.stderr += content["text"]

        reply = self.client.execute_interactive(code, timeout=timeout, output_hook=collect)["content"]
        if reply["status"] == "error":   # UsageError prints to stderr only; the reply names it
            result.error = (reply["ename"], reply["evalue"])
        return result

    def ok(self, code: str, timeout: float = 120) -> Result:
        """Run code that must not raise."""
        result = self.run(code, timeout)
        assert result.error is None, f"{code!r} raised {result.error}"
        return result

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)
