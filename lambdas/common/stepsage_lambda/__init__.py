"""Code shared by every stepsage Lambda (shipped as the CommonLayer)."""
