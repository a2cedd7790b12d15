"""Running a grid: each unfinished cell in a child process, each finished row into the store."""
