import sys
print(f"Hello, {input()}!", "args:", sys.argv[1:])
