"""Runtime helpers shared by training and evaluation: distributed processes and autocast."""
