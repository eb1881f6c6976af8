print("apvirt")
