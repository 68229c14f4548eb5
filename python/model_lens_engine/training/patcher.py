"""One patcher for everything a training run installs (like src/engine/tfjs's callInterceptor):
each patch is recorded with its undo, and restore() undoes them all in reverse order."""


class Patcher:
    def __init__(self):
        self._undo = []

    def patch(self, owner, name, value):
        """Sets owner.name = value; returns a function that undoes this one patch early (calling
        it again, or restore() after it, is harmless)."""
        had = name in vars(owner)
        old = vars(owner).get(name)
        setattr(owner, name, value)

        def undo():
            if had:
                setattr(owner, name, old)
            else:
                try:
                    delattr(owner, name)
                except AttributeError:
                    pass

        self._undo.append(undo)
        return undo

    def on_restore(self, undo):
        """Registers an undo that is not an attribute (a hook handle's remove)."""
        self._undo.append(undo)

    def restore(self):
        undo, self._undo = self._undo, []
        for u in reversed(undo):
            try:
                u()
            except Exception:  # one failed undo must not leave the others installed
                pass
