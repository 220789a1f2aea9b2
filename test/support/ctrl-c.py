"""Run a command on a pseudo-terminal (as an operator's shell does), wait for `prompt`, type
Ctrl-C, and print the command's exit code; 124 if it did not end within `seconds`.

    python3 ctrl-c.py PROMPT SECONDS COMMAND [ARG...]
"""
import os, pty, select, signal, sys, time

prompt, seconds, command = sys.argv[1].encode(), float(sys.argv[2]), sys.argv[3:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(command[0], command)
seen = b''
deadline = time.time() + seconds
while prompt not in seen and time.time() < deadline:
    ready, _, _ = select.select([fd], [], [], 0.2)
    if ready:
        try:
            seen += os.read(fd, 4096)
        except OSError:
            break
os.write(fd, b'\x03')
while time.time() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        print(os.waitstatus_to_exitcode(status))
        sys.exit(0)
    ready, _, _ = select.select([fd], [], [], 0.2)
    if ready:
        try:
            os.read(fd, 4096)
        except OSError:
            pass
os.kill(pid, signal.SIGKILL)
print(124)
