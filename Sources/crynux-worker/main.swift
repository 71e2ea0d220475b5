print("crynux-worker")
